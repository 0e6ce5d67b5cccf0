"""``python -m inspect_ad`` runs the command line (also what ``torchrun -m inspect_ad`` needs)."""
from inspect_ad.cli import main

if __name__ == "__main__":
    main()
