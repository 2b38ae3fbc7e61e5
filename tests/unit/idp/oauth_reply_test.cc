#include "service/idp/oauth_reply.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/json.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

struct Row {
  std::string error;
  int64_t code;
  FailureKind kind;
};

TEST(ClassifyTest, EveryRowOfTheProtocolNotes) {
  const std::vector<Row> rows = {
      {"invalid_grant", 700082, FailureKind::kNeedsReconsent},  {"invalid_grant", 70008, FailureKind::kNeedsReconsent},
      {"invalid_grant", 50173, FailureKind::kNeedsReconsent},   {"invalid_grant", 70000, FailureKind::kNeedsReconsent},
      {"invalid_grant", 65001, FailureKind::kNeedsReconsent},   {"invalid_grant", 50076, FailureKind::kNeedsReconsent},
      {"interaction_required", 50079, FailureKind::kNeedsReconsent},
      {"invalid_grant", 53003, FailureKind::kNeedsReconsent},   {"invalid_grant", 70043, FailureKind::kNeedsReconsent},
      {"invalid_client", 7000215, FailureKind::kInvalidClient}, {"invalid_client", 7000222, FailureKind::kInvalidClient},
      {"invalid_client", 700027, FailureKind::kInvalidClient},  {"invalid_client", 50012, FailureKind::kInvalidClient},
      {"invalid_client", 500133, FailureKind::kInvalidClient},  {"unauthorized_client", 700016, FailureKind::kAppConfiguration},
      {"invalid_request", 90002, FailureKind::kAppConfiguration}, {"invalid_grant", 50196, FailureKind::kThrottled},
      {"invalid_request", 90055, FailureKind::kThrottled},      {"invalid_grant", 50033, FailureKind::kTransient},
      {"invalid_request", 90006, FailureKind::kTransient},      {"invalid_request", 90024, FailureKind::kTransient},
      {"invalid_request", 90090, FailureKind::kTransient},      {"temporarily_unavailable", 0, FailureKind::kTransient},
      {"invalid_scope", 70011, FailureKind::kAppConfiguration},
  };
  for (const Row& row : rows) {
    ProviderFailure f = ClassifyOAuthError(400, row.error, row.code);
    EXPECT_EQ(f.kind, row.kind) << row.error << " " << row.code;
    EXPECT_EQ(f.provider_code, row.code);
    EXPECT_THAT(f.message, HasSubstr(row.error));
  }
  EXPECT_THAT(ClassifyOAuthError(400, "invalid_grant", 700082).message, HasSubstr("consent again"));
  EXPECT_THAT(ClassifyOAuthError(401, "invalid_client", 7000222).message, HasSubstr("add-credential"));
  EXPECT_EQ(ClassifyOAuthError(503, "http_503", 0).kind, FailureKind::kTransient);
}

TEST(ParseTokenReplyTest, ReadsATokenAnswer) {
  HttpResponse r{200, {}, R"({"token_type":"Bearer","scope":"a b","expires_in":"3599","ext_expires_in":3599,)"
                          R"("access_token":"at","refresh_token":"rt"})"};
  const absl::Time now = absl::FromUnixSeconds(1000);
  TokenReply reply = ParseTokenReply(r, now);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply.token->access_token.Reveal(), "at");
  EXPECT_EQ(reply.token->refresh_token.Reveal(), "rt");
  EXPECT_EQ(reply.token->expire_time, now + absl::Seconds(3599));
  EXPECT_THAT(reply.token->scopes, ::testing::ElementsAre("a", "b"));
}

TEST(ParseTokenReplyTest, MalformedAnswersAndRetryAfter) {
  EXPECT_EQ(ParseTokenReply({200, {}, R"({"token_type":"Bearer"})"}, absl::Now()).failure.kind, FailureKind::kTransient);
  EXPECT_EQ(ParseTokenReply({200, {}, "<html>"}, absl::Now()).failure.kind, FailureKind::kTransient);
  TokenReply throttled = ParseTokenReply({429, {{"retry-after", "3"}}, "{}"}, absl::Now());
  EXPECT_EQ(throttled.failure.kind, FailureKind::kThrottled);
  EXPECT_EQ(throttled.failure.retry_after, absl::Seconds(3));
  TokenReply grant = ParseTokenReply(
      {400, {}, R"({"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to )"
                R"(inactivity.","error_codes":[700082],"timestamp":"x","trace_id":"t","correlation_id":"c"})"},
      absl::Now());
  EXPECT_EQ(grant.failure.kind, FailureKind::kNeedsReconsent);
  EXPECT_EQ(grant.failure.provider_code, 700082);
}

// Numbers past int64's range are an outsider's input, read without undefined
// behaviour (UBSan fails this test otherwise): an expiry that far out is
// the end of time, an error code that large matches no known code.
TEST(ParseTokenReplyTest, NumbersPastTheIntegerRangeAreClamped) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  TokenReply far = ParseTokenReply({200, {}, R"({"access_token":"at","expires_in":1e30})"}, now);
  ASSERT_TRUE(far.ok());
  EXPECT_GT(far.token->expire_time, now + absl::Hours(24 * 365 * 1000));
  TokenReply code = ParseTokenReply({400, {}, R"({"error":"invalid_grant","error_codes":[-1e300]})"}, now);
  EXPECT_EQ(code.failure.kind, FailureKind::kNeedsReconsent);
  EXPECT_EQ(code.failure.provider_code, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(JsonInteger(std::nan("")), 0);
  EXPECT_EQ(JsonInteger(9223372036854775808.0), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(JsonInteger(-3.9), -3);
}

}  // namespace
}  // namespace tokenbroker
