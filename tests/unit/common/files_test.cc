#include "service/common/files.h"

#include <sys/stat.h>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

TEST(FilesTest, WriteAtomicallySetsModeAndContents) {
  testing::TempDir dir;
  const std::string path = dir.File("a/b/file");
  ASSERT_TRUE(MakeDirectories(DirName(path)).ok());
  ASSERT_TRUE(WriteFileAtomically(path, "hello", 0600).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*ReadFileToString(path), "hello");
  ASSERT_TRUE(WriteFileAtomically(path, "again", 0640).ok());
  EXPECT_EQ(*ReadFileToString(path), "again");
}

TEST(FilesTest, ExclusiveWriteRefusesAnExistingFile) {
  testing::TempDir dir;
  const std::string path = dir.WriteFile("exists", "old");
  absl::Status s = WriteFileAtomically(path, "new", 0600, /*exclusive=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*ReadFileToString(path), "old");
}

TEST(FilesTest, ReadingAMissingFileIsNotFoundNamingThePath) {
  testing::TempDir dir;
  absl::StatusOr<std::string> r = ReadFileToString(dir.File("missing"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("missing"), absl::string_view::npos);
}

TEST(FilesTest, DirName) {
  EXPECT_EQ(DirName("file"), ".");
  EXPECT_EQ(DirName("/file"), "/");
  EXPECT_EQ(DirName("var/db/file"), "var/db");
}

}  // namespace
}  // namespace tokenbroker
