from router_rl.cli.main import main

main()
