// A horizontal bar chart as a PNG, with no image library: an RGB canvas, a built-in 5x7 pixel font,
// and a PNG encoder that stores the image uncompressed (zlib "stored" deflate blocks, CRC-32 and
// Adler-32 computed here). Charts are small (~1 MB at most), so compression is not worth a dependency.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ternvk::profiler {

// An RGB image, 8 bits per channel, row-major.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  Image(int w, int h, uint32_t background = 0xffffff);
  void fill_rect(int x, int y, int w, int h, uint32_t color);
  // Draws `text` with the 5x7 font scaled by `scale` (letters are drawn lower-case); returns the x after it.
  int text(int x, int y, const std::string& text, uint32_t color, int scale = 1);
  static int text_width(const std::string& text, int scale = 1) { return int(text.size()) * 6 * scale; }
};

// PNG bytes of `image` (8-bit RGB, no interlace, filter 0, stored deflate blocks).
std::vector<uint8_t> encode_png(const Image& image);

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);
uint32_t adler32(const uint8_t* data, size_t n, uint32_t adler = 1);

struct Bar {
  std::string label;
  double value = 0;
  std::string value_text;  // printed after the bar
};

// Bars sorted as given, scaled to the largest value; `title` on top, `unit` under it.
Image bar_chart(const std::string& title, const std::string& subtitle, const std::vector<Bar>& bars);
void write_png(const std::filesystem::path& path, const Image& image);

}  // namespace ternvk::profiler
