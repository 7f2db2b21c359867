// The dashboard's only script besides htmx: the admin token and how refusals are shown.
(function () {
  "use strict";
  // A form that changes something sends the token typed on the page as a Bearer header
  // (the API's require_token); the token never travels as a form field or a cookie.
  document.body.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail.verb === "get") { return; }
    var field = document.getElementById("admin-token");
    var token = field ? field.value : "";
    if (token) { evt.detail.headers["Authorization"] = "Bearer " + token; }
    delete evt.detail.parameters["admin_token"];
  });
  // A refusal (401, 409, 422, ...) is shown where the answer would go, with its reason.
  document.body.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr.status < 400) { return; }
    var reason = xhr.statusText || "error";
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.detail) {
        reason = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch (e) { /* an HTML answer: keep the status text */ }
    var p = document.createElement("p");
    p.className = "refused";
    p.textContent = "Refused (" + xhr.status + "): " + reason;
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
    evt.detail.serverResponse = p.outerHTML;
  });
})();
