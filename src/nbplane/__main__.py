from nbplane._launch import main

main()
