from nbplane.cli import main

main()
