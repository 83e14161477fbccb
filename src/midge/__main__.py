from midge.cli.main import main

raise SystemExit(main())
