// Draws every [data-figure] holder from the figure the server built (dashboard/charts.py,
// dashboard/alerts/charts.py), embedded with json_script under the id the holder names.
// Shared by the page scripts, which add only what is particular to their page.
var microlensFigures = (function () {
  "use strict";

  // Returns the holders drawn. With hideEmptyCards, a card whose figure the server left
  // out (no data for it) is hidden instead of showing an empty frame.
  function draw(options) {
    var drawn = [];
    if (typeof Plotly === "undefined") {
      return drawn;
    }
    document.querySelectorAll("[data-figure]").forEach(function (holder) {
      var source = document.getElementById(holder.dataset.figure);
      if (!source) {
        var card = holder.closest(".card");
        if (options && options.hideEmptyCards && card) {
          card.hidden = true;
        }
        return;
      }
      var figure = JSON.parse(source.textContent);
      if (figure.empty) {
        holder.dataset.empty = figure.empty;
      }
      Plotly.newPlot(holder, figure.data, microlensTheme.apply(figure.layout), {
        displaylogo: false,
        responsive: true,
      }).then(function () {
        holder.dataset.drawn = "true";
      });
      microlensTheme.follow(holder);
      drawn.push(holder);
    });
    return drawn;
  }

  return { draw: draw };
})();

// A <select data-autosubmit> submits its form when changed (no inline handlers: the
// Content-Security-Policy allows scripts from files only).
document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
  "use strict";
  select.addEventListener("change", function () {
    select.form.submit();
  });
});
