"""``python -m dlopt`` (also what ``torchrun -m dlopt`` runs)."""

from dlopt.cli import main

main()
