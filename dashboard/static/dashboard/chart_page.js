// Overview and Micro model pages: every chart from the figures the server built; cards
// the server left without data are hidden.
microlensFigures.draw({ hideEmptyCards: true });
