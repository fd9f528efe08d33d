from xitui.cli.main import main

main()
