from slm_factory.cli import main

main()
