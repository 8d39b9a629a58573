from trialops.cli import main

main()
