// Type-ahead for the history's repository and branch filters: each input with data-suggest
// fills its <datalist> from /history/suggest, which offers only what the viewer may see.
// Values go in as option values (never as HTML). The page works the same without this file.
"use strict";

(function () {
  const WAIT_MS = 120;

  function fill(list, values) {
    const options = values.map(function (value) {
      const option = document.createElement("option");
      option.value = value;
      return option;
    });
    list.replaceChildren.apply(list, options);
  }

  function watch(input) {
    const list = document.getElementById(input.getAttribute("list"));
    const form = input.form;
    if (!list || !form) return;
    let timer = null;
    let asked = null;
    let latest = 0;

    async function ask() {
      const params = new URLSearchParams({ field: input.dataset.suggest, q: input.value.trim() });
      if (input.dataset.suggest === "branch" && form.elements.repo) {
        params.set("repo", form.elements.repo.value.trim());
      }
      const query = params.toString();
      if (query === asked) return;
      asked = query;
      const ticket = ++latest;
      try {
        const response = await fetch("/history/suggest?" + query,
                                     { headers: { Accept: "application/json" },
                                       credentials: "same-origin" });
        if (!response.ok) return;
        const body = await response.json();
        // An older answer arriving after a newer one must not replace it.
        if (ticket === latest) fill(list, body.values || []);
      } catch (error) {
        asked = null;  // offline for a moment: try again on the next keystroke
      }
    }

    function soon() {
      clearTimeout(timer);
      timer = setTimeout(ask, WAIT_MS);
    }

    input.addEventListener("input", soon);
    input.addEventListener("focus", soon);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[data-suggest]").forEach(watch);
  });
})();
