SELECT credits.charge('hot-slots', 1);
