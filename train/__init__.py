"""Training: SAR-JointNet (teacher), DDIM generation of the augmented set, DAKD training of SAROSS-Net."""
