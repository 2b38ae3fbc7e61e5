#include "service/common/time_util.h"

#include "gtest/gtest.h"
#include "service/common/files.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

TEST(TimeUtilTest, ProtoDurationsKeepTheirFractions) {
  google::protobuf::Duration d;
  d.set_nanos(500'000'000);
  EXPECT_EQ(FromProtoDuration(d), absl::Milliseconds(500));
  d.set_seconds(90);
  EXPECT_EQ(FromProtoDuration(d), absl::Seconds(90) + absl::Milliseconds(500));
}

TEST(TimeUtilTest, DatesAndTimes) {
  EXPECT_EQ(ParseDateOrTime("2027-11-27"), absl::FromCivil(absl::CivilDay(2027, 11, 27), absl::UTCTimeZone()));
  EXPECT_EQ(ParseDateOrTime("2027-11-27T12:00:00Z"),
            absl::FromCivil(absl::CivilSecond(2027, 11, 27, 12, 0, 0), absl::UTCTimeZone()));
  EXPECT_FALSE(ParseDateOrTime("next year").has_value());
  EXPECT_FALSE(ParseDateOrTime("").has_value());
}

TEST(ReadSecretFileTest, DropsTrailingNewlinesAndRefusesEmptyFiles) {
  testing::TempDir dir;
  EXPECT_EQ(ReadSecretFile(dir.WriteFile("s", "value\r\n\n"))->Reveal(), "value");
  EXPECT_EQ(ReadSecretFile(dir.WriteFile("inner", "a\nb\n"))->Reveal(), "a\nb");
  EXPECT_EQ(ReadSecretFile(dir.WriteFile("empty", "\n")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSecretFile(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tokenbroker
