from jitctl.cli import main

main()
