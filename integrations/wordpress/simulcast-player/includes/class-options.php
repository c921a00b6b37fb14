<?php
/**
 * The plugin's one option: server base URL, public key and player defaults.
 *
 * @package SimulcastPlayer
 */

declare(strict_types=1);

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Reads and cleans the stored settings (`simulcast_player_options`).
 */
final class Simulcast_Player_Options {

	public const NAME = 'simulcast_player_options';

	/** A self-hosted destination's public key: `pk_` and 43 URL-safe base64 characters. */
	public const KEY_PATTERN = '/^pk_[A-Za-z0-9_-]{16,128}$/';

	/**
	 * The defaults of every setting.
	 *
	 * @return array<string, mixed>
	 */
	public static function defaults(): array {
		return array(
			'server_url' => '',
			'api_key'    => '',
			'height'     => 0,
			'autoplay'   => true,
			'muted'      => true,
			'tips'       => true,
			'mode'       => 'element',
		);
	}

	/**
	 * The stored settings merged over the defaults.
	 *
	 * @return array<string, mixed>
	 */
	public static function get(): array {
		$stored = get_option( self::NAME, array() );
		return array_merge( self::defaults(), is_array( $stored ) ? $stored : array() );
	}

	/**
	 * Whether a string looks like a public `pk_` key (never an `sk_` secret).
	 *
	 * @param string $key The key.
	 */
	public static function is_public_key( string $key ): bool {
		return 1 === preg_match( self::KEY_PATTERN, $key );
	}

	/**
	 * A boolean from a shortcode attribute or form value ("true", "1", "yes", "on"...).
	 *
	 * @param mixed $value The value.
	 */
	public static function flag( mixed $value ): bool {
		if ( is_bool( $value ) ) {
			return $value;
		}
		return filter_var( $value, FILTER_VALIDATE_BOOLEAN );
	}

	/**
	 * The server base URL without a trailing slash, or '' unless http(s).
	 *
	 * @param string $url The URL.
	 */
	public static function clean_url( string $url ): string {
		$url = esc_url_raw( trim( $url ), array( 'http', 'https' ) );
		return '' === $url ? '' : untrailingslashit( $url );
	}
}
