"""``python -m lpzero_queue`` runs the lpzq command line."""

from lpzero_queue.cli import main

main()
