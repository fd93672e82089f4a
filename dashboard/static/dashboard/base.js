// Every page: the Plotly colours of the browser's colour scheme (light or dark, following
// prefers-color-scheme like the stylesheet), and "/" focusing the page's search box.
var microlensTheme = (function () {
  "use strict";
  var query = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function dark() {
    return Boolean(query && query.matches);
  }

  // The stylesheet's colours (custom properties), so figures and page agree.
  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // The layout with the page's colours: backgrounds, text, grid and axis lines, in every
  // axis of the figure (route share draws one y axis per micro model).
  function apply(layout) {
    var text = colour("--text");
    var grid = colour("--grid");
    layout.paper_bgcolor = colour("--surface");
    layout.plot_bgcolor = colour("--surface");
    layout.font = Object.assign({}, layout.font, { color: text });
    // Figures built with plotly.graph_objects carry Plotly's own template (white grid):
    // the first axes are themed even when the figure does not name them.
    layout.xaxis = layout.xaxis || {};
    layout.yaxis = layout.yaxis || {};
    Object.keys(layout).forEach(function (key) {
      if (/^[xy]axis\d*$/.test(key)) {
        layout[key] = Object.assign({}, layout[key], {
          gridcolor: grid,
          zerolinecolor: grid,
          linecolor: grid,
        });
      }
    });
    if (layout.legend) {
      layout.legend = Object.assign({}, layout.legend, { bgcolor: "rgba(0,0,0,0)" });
    }
    (layout.annotations || []).forEach(function (note) {
      note.font = Object.assign({}, note.font, { color: colour("--muted") });
    });
    return layout;
  }

  // Figures drawn on the page follow a change of scheme without a reload.
  function follow(holder) {
    if (query && query.addEventListener && typeof Plotly !== "undefined") {
      query.addEventListener("change", function () {
        Plotly.relayout(holder, apply(Object.assign({}, holder.layout)));
      });
    }
  }

  return { apply: apply, dark: dark, follow: follow };
})();

// "/" focuses the search box (the first of: an element marked data-search, a search
// input, the page's first text input), unless one is already typing in a field.
document.addEventListener("keydown", function (event) {
  "use strict";
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  var active = document.activeElement;
  if (active && (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName))) {
    return;
  }
  var box =
    document.querySelector("[data-search]") ||
    document.querySelector("main input[type=search]") ||
    document.querySelector("main input:not([type]), main input[type=text]");
  if (box) {
    event.preventDefault();
    box.focus();
    if (box.select) {
      box.select();
    }
  }
});
