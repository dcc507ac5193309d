// argv_dump: writes its arguments, then its environment, each followed by a NUL byte, to the
// file named by its first argument; for the launcher's tests of argv and environment passing.
#include <cstdio>
#include <cstring>

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) return 3;
  for (int i = 2; i < argc; ++i) std::fwrite(argv[i], 1, std::strlen(argv[i]) + 1, f);
  std::fputc('\n', f);  // separates the arguments from the environment
  for (char** e = environ; *e != nullptr; ++e) std::fwrite(*e, 1, std::strlen(*e) + 1, f);
  return std::fclose(f) == 0 ? 0 : 4;
}
