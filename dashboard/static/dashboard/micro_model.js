// Micro model page: every chart from the figures the server built; cards without data hide.
microlensFigures.draw({ hideEmptyCards: true });
