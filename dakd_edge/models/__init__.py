"""Model definitions: MambaVision encoder, CAFT, SAROSS-Net, SAR-JointNet, baselines."""
