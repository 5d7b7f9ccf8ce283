"""``python -m emulator``: the emulator's command line."""

from emulator.cli import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m emulator")
