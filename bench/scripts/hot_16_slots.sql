SELECT credits.charge('hot-16-slots', 1);
