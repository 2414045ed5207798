from dakd_edge.cli import main

main()
