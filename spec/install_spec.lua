-- install(), uninstall(), uvrequire.require, import_module.
local H = require "helper"
local uv = H.uv

describe("install", function()
  after_each(function()
    uv.uninstall()
    H.clean()
  end)

  it("replaces the global require and returns the module", function()
    local before = require
    assert.equals(uv, uv.install())
    assert.equals(uv.require, require)
    assert.not_equals(before, require)
  end)

  it("is idempotent, and uninstall restores the original", function()
    local before = require
    uv.install()
    uv.install()
    assert.equals(uv, uv.uninstall())
    assert.equals(before, require)
    uv.uninstall()  -- a second uninstall changes nothing
    assert.equals(before, require)
  end)

  it("import_module returns the module only", function()
    local r = table.pack(uv.import_module("string"))
    assert.same({ n = 1, string }, r)
    package.loaded["uvr_im_test"] = nil
    package.preload["uvr_im_test"] = function() return "m" end
    r = table.pack(uv.import_module("uvr_im_test"))
    assert.same({ n = 1, "m" }, r)
    package.preload["uvr_im_test"] = nil
    package.loaded["uvr_im_test"] = nil
  end)

  it("names the function in argument errors", function()
    assert.has_error(function() uv.import_module(nil) end,
      "bad argument #1 to 'import_module' (string expected, got nil)")
    assert.has_error(function() uv.require() end,
      "bad argument #1 to 'require' (string expected, got no value)")
  end)
end)
