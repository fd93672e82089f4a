// The firing-alerts banner: polls the small JSON view of the viewer's firing alerts and
// shows them above every page (hidden while none fire).
(function () {
  "use strict";
  var banner = document.getElementById("alerts-banner");
  if (!banner) {
    return;
  }
  function render(firing) {
    banner.textContent = "";
    if (!firing.length) {
      banner.hidden = true;
      return;
    }
    var title = document.createElement("strong");
    title.textContent = firing.length + (firing.length === 1 ? " alert" : " alerts") + " firing: ";
    banner.appendChild(title);
    firing.forEach(function (alert) {
      var chip = document.createElement("span");
      chip.className = "chip";
      var split = alert.split_value ? " [" + alert.split_by + "=" + alert.split_value + "]" : "";
      chip.textContent = alert.rule + split + " = " + alert.shown + " (n=" + alert.n + ")";
      banner.appendChild(chip);
    });
    var link = document.createElement("a");
    link.href = banner.dataset.page;
    link.textContent = "see alerts";
    banner.appendChild(link);
    banner.hidden = false;
  }
  function poll() {
    fetch(banner.dataset.src, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.json() : { firing: [] };
      })
      .then(function (body) {
        render(body.firing);
      })
      .catch(function () {});
  }
  poll();
  setInterval(poll, 60000);
})();
