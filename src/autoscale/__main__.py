from autoscale.cli import main

main()
