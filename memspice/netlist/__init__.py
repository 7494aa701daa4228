"""Circuit building: from memspice objects to complete ngspice netlists."""
