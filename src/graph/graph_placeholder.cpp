// Placeholder translation unit until the graph layer lands.
