"""``python -m attractor`` runs the command line."""
from attractor.cli import main

if __name__ == "__main__":
    main()
