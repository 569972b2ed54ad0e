"""``python -m aelab`` (what torchrun launches)."""

from aelab.cli import main

if __name__ == "__main__":
    main()
