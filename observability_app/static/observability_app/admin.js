/* The compliance browser (observability_app.admin): copy buttons beside shortened ids, and the export of the
   ticked events. Our own few lines, no library: the admin works without them (the values stay selectable, the
   export buttons submit the form). */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.obs-copy") : null;
    if (!button) { return; }
    event.preventDefault();
    copyText(button.getAttribute("data-copy") || "").then(function () {
      button.classList.add("obs-copied");
      button.setAttribute("data-state", "copied");
      window.setTimeout(function () { button.classList.remove("obs-copied"); }, 1500);
    }, function () {
      button.setAttribute("data-state", "failed");
    });
  });

  function updateSelection() {
    var form = document.getElementById("obs-export-selected");
    if (!form) { return; }
    var ticked = document.querySelectorAll("input.obs-pick:checked").length;
    var counter = document.getElementById("obs-selected-count");
    if (counter) { counter.textContent = ticked ? ticked + " selected" : "none selected"; }
    form.querySelectorAll("button").forEach(function (button) { button.disabled = ticked === 0; });
  }

  document.addEventListener("change", function (event) {
    if (event.target.id === "obs-pick-all") {
      document.querySelectorAll("input.obs-pick").forEach(function (box) { box.checked = event.target.checked; });
    }
    if (event.target.classList && (event.target.classList.contains("obs-pick") || event.target.id === "obs-pick-all")) {
      updateSelection();
    }
  });
  document.addEventListener("DOMContentLoaded", updateSelection);
})();
