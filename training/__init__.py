"""The parts of a training run that main.py assembles: building it, start-up checks, checkpoints."""
