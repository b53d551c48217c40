from vlmswap.cli import main

main()
