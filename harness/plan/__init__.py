"""From what the user asked to a validated plan: recipe, grid, combinations, the one gate."""
