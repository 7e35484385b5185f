"""What the commands share: argument types and the help format (``types``), and the flags of the recipe,
the data and the backends with their translation into typed objects (``recipe``). Only commands import it."""
