# Homebrew formula for havm: installs the prebuilt, signed binary from the GitHub release.
# The release script fills in version, URLs and sha256 values; see docs/service.md for the service notes.
class Havm < Formula
  desc "Run Home Assistant OS as a long-lived virtual machine, with zero configuration"
  homepage "https://github.com/havm-project/havm"
  version "0.1.0"
  license "Apache-2.0"

  on_macos do
    # Virtualization.framework with EFI boot and the generic platform needs macOS 13.
    depends_on macos: :ventura
    depends_on arch: :arm64

    url "https://github.com/havm-project/havm/releases/download/v0.1.0/havm-0.1.0-darwin-arm64.tar.gz"
    sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  end

  on_linux do
    depends_on "qemu"

    on_intel do
      url "https://github.com/havm-project/havm/releases/download/v0.1.0/havm-0.1.0-linux-x64.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000"
    end
    on_arm do
      url "https://github.com/havm-project/havm/releases/download/v0.1.0/havm-0.1.0-linux-arm64.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000"
    end
  end

  # launchd sends SIGKILL about 20 s after SIGTERM unless the job's plist sets ExitTimeOut, and Homebrew's
  # service DSL cannot set it. The plist below allows a full graceful Home Assistant shutdown
  # (shutdown.timeout_seconds up to 45 s); docs/service.md explains when to use it instead of brew services.
  EXIT_TIMEOUT_SECONDS = 60

  def install
    bin.install "havm"
    (pkgshare/"io.github.havm.plist").write launchd_plist
  end

  def post_install
    (var/"havm").mkpath
    (var/"log").mkpath
  end

  def launchd_plist
    <<~XML
      <?xml version="1.0" encoding="UTF-8"?>
      <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
      <plist version="1.0">
      <dict>
        <key>Label</key>
        <string>io.github.havm</string>
        <key>ProgramArguments</key>
        <array>
          <string>#{opt_bin}/havm</string>
          <string>run</string>
        </array>
        <key>KeepAlive</key>
        <dict>
          <key>SuccessfulExit</key>
          <false/>
        </dict>
        <key>RunAtLoad</key>
        <true/>
        <key>ExitTimeOut</key>
        <integer>#{EXIT_TIMEOUT_SECONDS}</integer>
        <key>ThrottleInterval</key>
        <integer>30</integer>
        <key>WorkingDirectory</key>
        <string>#{var}/havm</string>
        <key>StandardOutPath</key>
        <string>#{var}/log/havm.log</string>
        <key>StandardErrorPath</key>
        <string>#{var}/log/havm.log</string>
        <key>EnvironmentVariables</key>
        <dict>
          <key>PATH</key>
          <string>#{HOMEBREW_PREFIX}/bin:/usr/bin:/bin:/usr/sbin:/sbin</string>
        </dict>
      </dict>
      </plist>
    XML
  end

  # `brew services start havm`. KeepAlive only restarts havm after a failure: havm exits 0 after a clean
  # guest shutdown (`havm stop`, or Home Assistant's own "shut down"), non-zero when the VM died.
  service do
    run [opt_bin/"havm", "run"]
    keep_alive successful_exit: false
    throttle_interval 30
    working_dir var/"havm"
    log_path var/"log/havm.log"
    error_log_path var/"log/havm.log"
    environment_variables PATH: std_service_path_env
  end

  def caveats
    <<~EOS
      `brew services start havm` runs Home Assistant at login. launchd allows it only about 20 s to shut
      Home Assistant down, so set `shutdown.timeout_seconds: 15` in ~/.config/havm/config.yml, or use the
      LaunchAgent with a #{EXIT_TIMEOUT_SECONDS} s grace instead of brew services:
        cp #{opt_pkgshare}/io.github.havm.plist ~/Library/LaunchAgents/
        launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/io.github.havm.plist
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/havm version")
  end
end
