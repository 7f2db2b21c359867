// Starts Swagger UI on /docs (arcade_pacs/admin/apidocs.py): a file, since the
// Content-Security-Policy allows no inline script. No validator: nothing leaves the network.
(function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
})();
