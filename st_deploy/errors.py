"""The one exception users see.

Every failure caused by the user's input (a ticket file, a shape, an option) is a
DeployError whose message names the file or layer, the fault and, where there is one,
the fix. The CLI prints it on one line and exits 2; anything else is our bug.
"""


class DeployError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class FidelityError(DeployError):
    """An artifact's outputs do not match the ticket within the tolerance."""

    exit_code = 1
