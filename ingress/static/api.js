// fetch() for the ingress's HTTP API from its own pages (agent console, analytics).
// A credential in the page's URL (?api_key=… or ?access_token=…) is sent as
// "Authorization: Bearer …", never on the API's URLs (which end up in logs).
const params = new URLSearchParams(location.search);
const credential = params.get("api_key") || params.get("access_token");

export function apiFetch(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (credential) headers.set("Authorization", `Bearer ${credential}`);
  return fetch(path, {...init, headers});
}
