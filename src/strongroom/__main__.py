"""`python -m strongroom`: the same command line as the `strongroom` script."""

from strongroom.cli import main

if __name__ == "__main__":
    main()
