from eslchan.cli import main

raise SystemExit(main())
