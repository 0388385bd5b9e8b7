from describer.cli.app import main

main()
