// Starts Swagger UI (static/vendor/swagger-ui-bundle-*.js) on /api/docs. A file
// of its own because the Content-Security-Policy allows no inline script. The
// page names the document to render in the container's data-openapi attribute.
"use strict";

(function () {
  var container = document.getElementById("swagger-ui");
  if (!container || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: container.dataset.openapi,
    domNode: container,
    // The bundle's own presets only: no top bar with a field to load another
    // document, and no badge fetched from validator.swagger.io.
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    // Deep links put a link inside each operation's button (nested controls).
    deepLinking: false,
    // A light theme whose colours for JSON all read at 4.5:1 or better; the
    // default's numbers do not.
    syntaxHighlight: { activated: true, theme: "idea" },
  });

  // What Swagger UI renders without a name or out of the keyboard's reach: the
  // request body's editor (after "Try it out"), the authorization dialog's
  // close button, and the scrolling code blocks (a response body, say), which
  // take the focus so that the arrow keys scroll them.
  var fixes = [
    ["textarea.body-param__text", "aria-label", "Request body"],
    ["button.close-modal", "aria-label", "Close"],
    [".highlight-code > .microlight", "tabindex", "0"],
  ];
  new MutationObserver(function () {
    fixes.forEach(function (fix) {
      var missing = fix[0] + ":not([" + fix[1] + "])";
      container.querySelectorAll(missing).forEach(function (element) {
        element.setAttribute(fix[1], fix[2]);
      });
    });
  }).observe(container, { childList: true, subtree: true });
})();
