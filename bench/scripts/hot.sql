SELECT credits.charge('hot', 1);
