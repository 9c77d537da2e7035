// Placeholder translation unit until the executor lands.
