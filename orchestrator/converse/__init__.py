"""Full-duplex Converse sessions: the listen path never stops, the speak path runs beside it."""
