// Reading an OAuth 2.0 token endpoint's answer (RFC 6749 section 5, with
// Microsoft's error_codes): a token, or a classified failure. Pure functions.
#ifndef TOKENBROKER_SERVICE_IDP_OAUTH_REPLY_H_
#define TOKENBROKER_SERVICE_IDP_OAUTH_REPLY_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "service/common/json.h"
#include "service/http/http_client.h"
#include "service/idp/provider.h"

namespace tokenbroker {

// `now` turns expires_in into an expiry time.
TokenReply ParseTokenReply(const HttpResponse& response, absl::Time now);

// Classifies an OAuth error: decided on `error` first, refined by the
// provider's numeric code (protocol-notes.md), with a message that says what
// to do.
ProviderFailure ClassifyOAuthError(int http_status, const std::string& error, int64_t code);

// A failure for a transport error (connection, TLS, timeout).
ProviderFailure TransportFailure(const absl::Status& status);

// A reply for a credential the broker itself cannot use (a key that does not
// sign, a key file of the wrong kind): the next credential is tried.
TokenReply CredentialFailure(absl::string_view message);

// POSTs `form` (form-encoded; it holds secrets, wiped here, as are the
// headers) and returns the answer; UNAVAILABLE for transport failures.
absl::StatusOr<HttpResponse> PostForm(HttpClient& http, const std::string& url,
                                      std::vector<std::pair<std::string, std::string>> form,
                                      std::vector<std::pair<std::string, std::string>> headers);

// POSTs `form` (form-encoded; it holds secrets, wiped here) with `headers`
// (an Authorization header is a secret, wiped here too) to a token endpoint
// and reads the answer.
TokenReply PostTokenForm(HttpClient& http, const std::string& url,
                         std::vector<std::pair<std::string, std::string>> form, absl::Time now,
                         std::vector<std::pair<std::string, std::string>> headers = {});

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_OAUTH_REPLY_H_
