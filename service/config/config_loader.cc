#include "service/config/config_loader.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <set>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/api/one_message_defaults.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"
#include "service/common/time_util.h"
#include "service/config/yaml_proto.h"

namespace tokenbroker {
namespace {

// Splits "host:port" or "[v6]:port". Returns false on malformed input.
bool SplitHostPort(absl::string_view address, absl::string_view* host, absl::string_view* port) {
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') return false;
    *host = address.substr(1, close - 1);
    *port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = address.substr(0, colon);
    *port = address.substr(colon + 1);
    if (absl::StrContains(*host, ':')) return false;  // bare IPv6 needs brackets
  }
  uint32_t p;
  return !host->empty() && absl::SimpleAtoi(*port, &p) && p <= 65535;
}

absl::Status CheckAddress(absl::string_view source, absl::string_view key, absl::string_view address,
                          bool allow_unix) {
  if (allow_unix && absl::StartsWith(address, "unix:")) {
    if (address.size() > 5) return absl::OkStatus();
  } else {
    absl::string_view host, port;
    if (SplitHostPort(address, &host, &port)) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": ", key, ": \"", address, "\" is not an address; expected host:port",
      allow_unix ? " (for example 127.0.0.1:50051 or [::]:50051) or unix:/path" : " (for example 127.0.0.1:9464)"));
}

}  // namespace

bool IsLoopbackOrUnixAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  absl::string_view host, port;
  if (!SplitHostPort(address, &host, &port)) return false;
  if (host == "localhost") return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::Status ValidateConfig(const Config& config, absl::string_view source) {
  const auto& server = config.server();
  RETURN_IF_ERROR(CheckAddress(source, "server.grpc_address", server.grpc_address(), true));
  if (!server.metrics_address().empty()) {
    RETURN_IF_ERROR(CheckAddress(source, "server.metrics_address", server.metrics_address(), false));
  }
  if (!server.health_address().empty()) {
    RETURN_IF_ERROR(CheckAddress(source, "server.health_address", server.health_address(), false));
    // Port 0 means "any free port": two of those never collide.
    const bool fixed_port = !absl::EndsWith(server.health_address(), ":0");
    if (fixed_port && (server.health_address() == server.grpc_address() ||
                       server.health_address() == server.metrics_address())) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": server.health_address: must differ from server.grpc_address and server.metrics_address"));
    }
  }
  if (server.has_tls() && server.plaintext()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": server: set either tls or plaintext: true, not both"));
  }
  if (server.has_tls()) {
    if (server.tls().certificate_file().empty() || server.tls().private_key_file().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": server.tls: certificate_file and private_key_file must not be empty"));
    }
  } else if (!server.plaintext()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": server.tls: required (certificate_file, private_key_file); or, on loopback or a Unix socket "
                "only, plaintext: true"));
  } else if (!IsLoopbackOrUnixAddress(server.grpc_address())) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": server.grpc_address: plaintext gRPC is only allowed on loopback (127.0.0.1, [::1], localhost) "
                "or a Unix socket, not \"",
        server.grpc_address(), "\""));
  }
  if (config.store().backend_case() == config::v1::StoreConfig::BACKEND_NOT_SET) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": store: expected one of: sqlite, postgres"));
  }
  if (config.store().has_sqlite() && config.store().sqlite().path().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": store.sqlite.path: must not be empty"));
  }
  if (config.keys().keyring_file().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": keys.keyring_file: must not be empty"));
  }
  if (config.mail().has_idle_renew()) {
    const absl::Duration renew = FromProtoDuration(config.mail().idle_renew());
    if (renew < absl::Seconds(1) || renew > absl::Minutes(29)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": mail.idle_renew: between 1s and 29m (RFC 2177: servers may drop a client idle for 30m)"));
    }
  }
  const auto& mail = config.mail();
  if (mail.get_message_threads() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": mail.get_message_threads: at most 64 (0: GetMessage on the stream workers)"));
  }
  if (mail.fetch_message_threads() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": mail.fetch_message_threads: at most 64 (0: FetchMessage on the stream workers)"));
  }
  const uint32_t get_threads = mail.has_get_message_threads() ? mail.get_message_threads() : kDefaultGetMessageThreads;
  const uint32_t fetch_threads =
      mail.has_fetch_message_threads() ? mail.fetch_message_threads() : kDefaultFetchMessageThreads;
  if (mail.has_get_message_threads_poll() && get_threads == 0 && fetch_threads == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        ": mail.get_message_threads_poll: only with threads of their own, and GetMessage and FetchMessage are both "
        "on the stream workers (mail.get_message_threads: 0, mail.fetch_message_threads: 0); remove the "
        "poll setting or give either method threads"));
  }
  const auto& tokens = config.tokens();
  auto check_rate = [&](double rate, absl::string_view field) -> absl::Status {
    if (rate >= 0 && rate <= 100000) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", field, ": between 0 (no pacing) and 100000 requests a second"));
  };
  if (tokens.has_tenant_requests_per_second()) {
    RETURN_IF_ERROR(check_rate(tokens.tenant_requests_per_second(), "tokens.tenant_requests_per_second"));
  }
  if (tokens.has_tenant_max_wait() && (FromProtoDuration(tokens.tenant_max_wait()) < absl::ZeroDuration() ||
                                       FromProtoDuration(tokens.tenant_max_wait()) > absl::Minutes(5))) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": tokens.tenant_max_wait: between 0s and 5m"));
  }
  std::set<std::pair<int, std::string>> paced_tenants;
  for (int i = 0; i < tokens.tenant_rates_size(); ++i) {
    const auto& rate = tokens.tenant_rates(i);
    const std::string field = absl::StrCat("tokens.tenant_rates[", i, "]");
    if (rate.tenant().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ".tenant: must not be empty"));
    }
    RETURN_IF_ERROR(check_rate(rate.requests_per_second(), absl::StrCat(field, ".requests_per_second")));
    if (!paced_tenants.emplace(rate.provider(), rate.tenant()).second) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": tenant \"",
                                                     absl::CHexEscape(rate.tenant().substr(0, 128)),
                                                     "\" of this provider is already listed"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source_name) {
  Config config;
  RETURN_IF_ERROR(YamlToProto(yaml, source_name, &config));
  RETURN_IF_ERROR(ValidateConfig(config, source_name));
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("configuration file: ", text.status().message()));
  }
  return ParseConfig(*text, path);
}

absl::Duration ShutdownGracePeriod(const Config& config) {
  if (!config.server().has_shutdown_grace_period()) return absl::Seconds(15);
  return FromProtoDuration(config.server().shutdown_grace_period());
}

}  // namespace tokenbroker
