// Starts GraphiQL from the files served beside this one (see app/graphiql.py): no CDN, no inline script.
(function () {
  "use strict";

  var EXAMPLE_QUERY = [
    "# partner-licensing",
    "#",
    "# Your API token goes in the Headers tab below:",
    '#   {"Authorization": "Bearer <token>"}',
    "# (`make run` prints a partner and a staff token).",
    "# Subscriptions (licenseEvents, standingChanged,",
    "# invoiceUpdated) send the same header.",
    "",
    "{",
    "  viewer { id name billingZone currency standing { state } }",
    "  products { slug name dailyPrice }",
    "}",
    "",
  ].join("\n");

  var httpUrl = window.location.origin + window.location.pathname;
  var wsUrl = httpUrl.replace(/^http/, "ws");
  var hint = document.getElementById("token-hint");

  function hasAuthorization(headers) {
    return Object.keys(headers || {}).some(function (name) {
      return name.toLowerCase() === "authorization" && String(headers[name]).trim() !== "";
    });
  }

  function showTokenHint(headers) {
    hint.hidden = hasAuthorization(headers);
  }

  // Both HTTP and websocket operations carry the Headers tab: GraphiQL sends the headers as the
  // websocket's connection_params, where the API reads `Authorization`.
  var send = GraphiQL.createFetcher({ url: httpUrl, subscriptionUrl: wsUrl });

  function fetcher(params, options) {
    showTokenHint(options && options.headers);
    return send(params, options);
  }

  var app = React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: EXAMPLE_QUERY,
    defaultEditorToolsVisibility: true,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    // A bearer token is a secret: keep it out of localStorage.
    shouldPersistHeaders: false,
  });
  ReactDOM.createRoot(document.getElementById("graphiql")).render(app);
})();
