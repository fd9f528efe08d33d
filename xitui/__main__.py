from xitui.cli.app import main

main()
