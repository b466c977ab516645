#include "runtime/profiler/png_chart.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>

#include "runtime/core/error.h"

namespace ternvk::profiler {
namespace {

// A 5x7 font drawn for this file: 7 rows of 5 pixels per glyph, '#' = ink. Upper-case letters
// are drawn with the lower-case glyphs; anything missing is drawn as '?'.
struct Glyph {
  char c;
  const char* rows;  // 35 characters
};
constexpr Glyph kFont[] = {
    {' ', "..................................."}, {'0', ".###.#...##..###.#.###..##...#.###."},
    {'1', "..#...##....#....#....#....#...###."}, {'2', ".###.#...#....#...#...#...#...#####"},
    {'3', "#####...#...#.....#.....##...#.###."}, {'4', "...#...##..#.#.#..#.#####...#....#."},
    {'5', "######....####.....#....##...#.###."}, {'6', "..##..#...#....####.#...##...#.###."},
    {'7', "#####....#...#...#...#....#....#..."}, {'8', ".###.#...##...#.###.#...##...#.###."},
    {'9', ".###.#...##...#.####....#...#..##.."}, {'a', "...........###.....#.#####...#.####"},
    {'b', "#....#....#.##.##..##...##...#####."}, {'c', "...........###.#....#....#...#.###."},
    {'d', "....#....#.##.##..###...##...#.####"}, {'e', "...........###.#...#######.....###."},
    {'f', "..##..#..#.#...###...#....#....#..."}, {'g', "......#####...##...#.####....#.###."},
    {'h', "#....#....#.##.##..##...##...##...#"}, {'i', "..#........##....#....#....#...###."},
    {'j', "...#........##....#....#.#..#..##.."}, {'k', "#....#....#..#.#.#..##...#.#..#..#."},
    {'l', ".##....#....#....#....#....#...###."}, {'m', "..........##.#.#.#.##.#.##...##...#"},
    {'n', "..........#.##.##..##...##...##...#"}, {'o', "...........###.#...##...##...#.###."},
    {'p', "..........####.#...#####.#....#...."}, {'q', "...........##.##..##.####....#....#"},
    {'r', "..........#.##.##..##....#....#...."}, {'s', "...........###.#.....###.....#####."},
    {'t', ".#....#...###...#....#....#..#..##."}, {'u', "..........#...##...##...##..##.##.#"},
    {'v', "..........#...##...##...#.#.#...#.."}, {'w', "..........#...##...##.#.##.#.#.#.#."},
    {'x', "..........#...#.#.#...#...#.#.#...#"}, {'y', "..........#...##...#.####....#.###."},
    {'z', "..........#####...#...#...#...#####"}, {'.', "..........................##...##.."},
    {',', ".....................##....#...#..."}, {':', "......##...##........##...##......."},
    {'%', "##...##..#...#...#...#...#..##...##"}, {'_', "..............................#####"},
    {'-', "...............#####..............."}, {'+', ".......#....#..#####..#....#......."},
    {'=', "..........#####.....#####.........."}, {'(', "...#...#...#....#....#.....#.....#."},
    {')', ".#.....#.....#....#....#...#...#..."}, {'/', ".........#...#...#...#...#........."},
    {'[', ".###..#....#....#....#....#....###."}, {']', ".###....#....#....#....#....#..###."},
    {'|', "..#....#....#....#....#....#....#.."}, {'#', ".#.#..#.#.#####.#.#.#####.#.#..#.#."},
    {'?', ".###.#...#....#...#...#.........#.."}, {'*', ".......#..#.#.#.###.#.#.#..#......."},
    {'>', ".#.....#.....#.....#...#...#...#..."}, {'<', "...#...#...#...#.....#.....#.....#."},
};

const Glyph& glyph(char c) {
  c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& g : kFont)
    if (g.c == c) return g;
  for (const auto& g : kFont)
    if (g.c == '?') return g;
  return kFont[0];
}

std::array<uint32_t, 256> crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    t[n] = c;
  }
  return t;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

void chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_be32(out, uint32_t(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, crc32(out.data() + start, out.size() - start));
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const auto table = crc_table();
  uint32_t c = crc ^ 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t adler32(const uint8_t* data, size_t n, uint32_t adler) {
  uint32_t a = adler & 0xffff, b = adler >> 16;
  for (size_t i = 0; i < n; ++i) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

Image::Image(int w, int h, uint32_t background) : width(w), height(h), rgb(size_t(w) * h * 3) {
  fill_rect(0, 0, w, h, background);
}

void Image::fill_rect(int x, int y, int w, int h, uint32_t color) {
  const int x0 = std::max(0, x), y0 = std::max(0, y), x1 = std::min(width, x + w), y1 = std::min(height, y + h);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) {
      uint8_t* p = &rgb[(size_t(yy) * width + xx) * 3];
      p[0] = uint8_t(color >> 16);
      p[1] = uint8_t(color >> 8);
      p[2] = uint8_t(color);
    }
}

int Image::text(int x, int y, const std::string& s, uint32_t color, int scale) {
  for (char c : s) {
    const Glyph& g = glyph(c);
    for (int r = 0; r < 7; ++r)
      for (int col = 0; col < 5; ++col)
        if (g.rows[r * 5 + col] == '#') fill_rect(x + col * scale, y + r * scale, scale, scale, color);
    x += 6 * scale;
  }
  return x;
}

std::vector<uint8_t> encode_png(const Image& img) {
  if (img.width <= 0 || img.height <= 0) throw Error("PNG: empty image");
  // Raw scanlines, each prefixed by filter type 0.
  const size_t stride = size_t(img.width) * 3;
  std::vector<uint8_t> raw;
  raw.reserve((stride + 1) * img.height);
  for (int y = 0; y < img.height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), img.rgb.begin() + long(y * stride), img.rgb.begin() + long((y + 1) * stride));
  }
  // zlib: CMF/FLG (deflate, 32K window, no dictionary, check bits), stored blocks, Adler-32.
  std::vector<uint8_t> z = {0x78, 0x01};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);  // BFINAL, BTYPE = 00 (stored)
    z.push_back(uint8_t(n));
    z.push_back(uint8_t(n >> 8));
    z.push_back(uint8_t(~n));
    z.push_back(uint8_t(~n >> 8));
    z.insert(z.end(), raw.begin() + long(pos), raw.begin() + long(pos + n));
    pos += n;
  } while (pos < raw.size());
  put_be32(z, adler32(raw.data(), raw.size()));

  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, uint32_t(img.width));
  put_be32(ihdr, uint32_t(img.height));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, RGB, deflate, filter 0, no interlace
  chunk(out, "IHDR", ihdr);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", {});
  return out;
}

Image bar_chart(const std::string& title, const std::string& subtitle, const std::vector<Bar>& bars) {
  constexpr int scale = 2, row = 22, bar_h = 16, margin = 16, bar_area = 560;
  size_t label_chars = 8, value_chars = 8;
  for (const auto& b : bars) {
    label_chars = std::max(label_chars, b.label.size());
    value_chars = std::max(value_chars, b.value_text.size());
  }
  const int label_w = Image::text_width(std::string(label_chars, ' '), scale);
  const int value_w = Image::text_width(std::string(value_chars, ' '), scale);
  const int width = std::max(margin * 2 + label_w + 12 + bar_area + 8 + value_w,
                             margin * 2 + Image::text_width(std::max(title, subtitle), scale));
  const int top = margin + 7 * scale + 8 + 7 * scale + 14;
  const int height = top + int(bars.size()) * row + margin;
  Image img(width, height, 0xffffff);
  img.text(margin, margin, title, 0x202020, scale);
  img.text(margin, margin + 7 * scale + 8, subtitle, 0x606060, scale);
  double vmax = 0;
  for (const auto& b : bars) vmax = std::max(vmax, b.value);
  const int x0 = margin + label_w + 12;
  img.fill_rect(x0 - 1, top - 4, 1, int(bars.size()) * row + 4, 0x909090);  // axis
  for (size_t i = 0; i < bars.size(); ++i) {
    const int y = top + int(i) * row;
    const auto& b = bars[i];
    img.text(x0 - 12 - Image::text_width(b.label, scale), y + (bar_h - 7 * scale) / 2, b.label, 0x202020, scale);
    const int w = vmax > 0 ? std::max(1, int(bar_area * b.value / vmax + 0.5)) : 1;
    img.fill_rect(x0, y, w, bar_h, i % 2 ? 0x4a7fb5 : 0x2f5f96);
    img.text(x0 + w + 8, y + (bar_h - 7 * scale) / 2, b.value_text, 0x202020, scale);
  }
  return img;
}

void write_png(const std::filesystem::path& path, const Image& image) {
  const auto bytes = encode_png(image);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error("cannot create the chart file '" + path.string() + "'");
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!f) throw Error("cannot write the chart file '" + path.string() + "'");
}

}  // namespace ternvk::profiler
